"""Migrates the test STA server's SQLite database, then serves it threaded: python sta_serve.py PORT."""
import os
import socket
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sta_settings")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    import django
    from django.core.management import call_command
    from django.core.servers.basehttp import WSGIServer, run
    from django.core.wsgi import get_wsgi_application

    class NoDelayServer(WSGIServer):
        """Django's server writes an answer's head and body in separate sends; with Nagle's algorithm on, the body
        then waits for the client's delayed ACK (40 ms on Linux), which caps keep-alive clients at ~20 requests/s.
        Production servers set TCP_NODELAY, and so does this one."""

        def get_request(self):
            sock, addr = super().get_request()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock, addr

    port = int(sys.argv[1])
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    # Django's development server in its threaded form (one thread per connection, HTTP/1.1 keep-alive), without
    # runserver's autoreloader, checks and banner.
    run("127.0.0.1", port, get_wsgi_application(), ipv6=False, threading=True, server_cls=NoDelayServer)


if __name__ == "__main__":
    main()
