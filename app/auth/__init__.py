"""Who is calling: consumers (bearer tokens), merchant staff (console cookie + CSRF), shops (API keys).

Every view is marked with exactly one guard from :mod:`app.auth.guards`; a test walks the URL map
and fails on any view without one.
"""
