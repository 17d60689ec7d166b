"""Scripts the reliability tests run as processes of their own (an application, a client, a WSGI app)."""
