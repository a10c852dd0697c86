use std::borrow::Cow;

use super::*;

fn order<'a>(ts: f64, user: &'a str, amount: f64, device: Option<&'a str>) -> EventRef<'a> {
    EventRef {
        kind: Some(Kind::Order),
        ts,
        user_id: Cow::Borrowed(user),
        amount,
        merchant_id: Cow::Borrowed("m"),
        device_id: device.map(Cow::Borrowed),
        ..Default::default()
    }
}

fn login<'a>(ts: f64, user: &'a str, success: bool, lat: f64, lon: f64) -> EventRef<'a> {
    EventRef {
        kind: Some(Kind::Login),
        ts,
        user_id: Cow::Borrowed(user),
        success,
        lat: Some(lat),
        lon: Some(lon),
        ..Default::default()
    }
}

fn get(s: &FeatureState, kind: Kind, row: &Row, name: &str) -> f64 {
    row[s.schema(kind).get(name).unwrap_or_else(|| panic!("no column {name}"))]
}

#[test]
fn the_python_docstring_example() {
    let mut s = FeatureState::new(Params::default()).unwrap();
    let mut a = Row::new();
    let mut b = Row::new();
    assert_eq!(s.transform(&order(0.0, "u", 50.0, Some("d")), &mut a), Some(Kind::Order));
    s.transform(&order(30.0, "u", 20.0, Some("d2")), &mut b);
    assert_eq!(get(&s, Kind::Order, &a, "user_orders_1m"), 0.0);
    assert_eq!(get(&s, Kind::Order, &b, "user_orders_1m"), 1.0);
    assert_eq!(get(&s, Kind::Order, &b, "user_amount_1m"), 50.0);
    assert_eq!(get(&s, Kind::Order, &b, "user_new_device"), 1.0);
    assert_eq!(get(&s, Kind::Order, &b, "user_devices_24h"), 1.0);
    // no order carried an IP: its columns are absent (NaN), the device's present
    assert!(get(&s, Kind::Order, &b, "ip_orders_1m").is_nan());
    assert!(get(&s, Kind::Order, &b, "account_age_days").is_nan());
    assert_eq!(get(&s, Kind::Order, &b, "device_orders_1m"), 0.0);

    let mut x = Row::new();
    s.transform(&login(30.0, "v", true, 48.8566, 2.3522), &mut x);
    s.transform(&login(3630.0, "v", false, 40.7128, -74.006), &mut x);
    assert_eq!(get(&s, Kind::Login, &x, "login_distance_km").round(), 5837.0);
    assert_eq!(get(&s, Kind::Login, &x, "login_velocity_kmh").round(), 5837.0);
    assert_eq!(get(&s, Kind::Login, &x, "user_logins_1h"), 1.0);
    assert_eq!(get(&s, Kind::Login, &x, "login_success"), 0.0);
}

#[test]
fn names_and_validation() {
    assert_eq!(
        [30.0, 60.0, 300.0, 3600.0, 86400.0, 604800.0, 1.5, 0.1, 1234567.5].map(window_name),
        ["30s", "1m", "5m", "1h", "24h", "168h", "1.5s", "0.1s", "1.23457e+06s"]
    );
    let s = FeatureState::new(Params { windows: vec![300.0, 30.0, 7200.0, 300.0], ..Params::default() }).unwrap();
    assert_eq!(s.params().windows, [30.0, 300.0, 7200.0]);
    assert_eq!(s.schema(Kind::Order).names[4..6], ["user_orders_30s", "user_amount_30s"]);
    assert_eq!(s.engine_len(Kind::Order), 4 + 6 * 2 * 3 + 2 + 15 + 14);
    assert_eq!(s.engine_len(Kind::Login), 28);
    assert!(FeatureState::new(Params { windows: vec![], ..Params::default() }).is_err());
    assert!(FeatureState::new(Params { windows: vec![60.0, f64::NAN], ..Params::default() }).is_err());
    assert!(FeatureState::new(Params { idle_ttl: 0.0, ..Params::default() }).is_err());
    assert!(FeatureState::new(Params { max_known: 0, ..Params::default() }).is_err());
}

#[test]
fn labels_change_nothing_and_snapshots_continue_exactly() {
    let users = ["a", "b", "c", "d"];
    let devices = ["d1", "d2", "d3"];
    let events: Vec<EventRef<'static>> = (0..3000)
        .map(|i| {
            let t = 1_714_521_600.0 + (i * 7 % 11 + i * 13) as f64;
            if i % 3 == 0 {
                login(t, users[i % 4], i % 5 != 0, (i % 90) as f64, (i % 180) as f64)
            } else {
                order(t, users[(i / 3) % 4], (i % 97) as f64 * 1.25, Some(devices[i % 3]))
            }
        })
        .collect();
    let mut s = FeatureState::new(Params { expire_every: 64, max_entities: 3, ..Params::default() }).unwrap();
    let mut row = Row::new();
    for e in &events[..1500] {
        s.transform(e, &mut row);
    }
    let bytes = s.to_bytes();
    let label = EventRef { kind: Some(Kind::Label), ts: 1e10, ..Default::default() };
    assert_eq!(s.transform(&label, &mut row), None);
    assert!(row.is_empty());
    assert_eq!(s.to_bytes(), bytes);
    let mut copy = FeatureState::from_bytes(&bytes).unwrap();
    let mut other = Row::new();
    for e in &events[1500..] {
        let k = s.transform(e, &mut row);
        assert_eq!(copy.transform(e, &mut other), k);
        assert_eq!(row.len(), other.len());
        assert!(row.iter().zip(&other).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    assert_eq!(copy.to_bytes(), s.to_bytes());
    assert!(s.users.len() <= 3 + 64);
    assert!(FeatureState::from_bytes(&bytes[..10]).is_err());
}

#[test]
fn pass_through_renames_collisions_and_reuses_columns() {
    let mut s = FeatureState::new(Params::default()).unwrap();
    let mut e = order(0.0, "u", 10.0, None);
    e.features = vec![
        (Cow::Borrowed("order_amount"), 1.5),
        (Cow::Borrowed("model_score"), 0.9),
        (Cow::Borrowed("in_order_amount"), 2.0),
    ];
    let mut row = Row::new();
    s.transform(&e, &mut row);
    let names: Vec<&str> = s.pass_columns().iter().map(|&c| s.schema(Kind::Order).names[c].as_str()).collect();
    assert_eq!(names, ["in_in_order_amount", "model_score", "in_order_amount"]);
    assert_eq!(get(&s, Kind::Order, &row, "order_amount"), 10.0);
    assert_eq!(get(&s, Kind::Order, &row, "in_in_order_amount"), 1.5);
    let cols = s.pass_columns().to_vec();
    s.transform(&e, &mut row); // cached
    assert_eq!(s.pass_columns(), cols);
    assert_eq!(get(&s, Kind::Order, &row, "model_score"), 0.9);
}

#[test]
fn haversine_is_pythons() {
    // math: _haversine_km(48.8566, 2.3522, 40.7128, -74.006) == 5837.248966566374 in CPython
    assert_eq!(haversine_km(48.8566, 2.3522, 40.7128, -74.006), 5837.248966566374);
}
