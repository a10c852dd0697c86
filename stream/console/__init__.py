"""The analyst console: a server-rendered web app over the alert store (see docs/console.md).

:func:`stream.console.app.create_app` builds the ASGI app; :class:`stream.console.store.ConsoleStore` holds its SQL.
"""
