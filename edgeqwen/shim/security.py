"""What keeps the server safe on a network: API keys, the CORS policy, and limits on what one client may
hold. The threat model is in the bundle's README ("Serving on a network").

    keys         every endpoint but /health needs `Authorization: Bearer KEY` or `X-Api-Key: KEY`
                 (compared in constant time; never logged); without a key the server listens on
                 loopback only, unless --no-auth says otherwise out loud
    CORS         browsers from the origins given with --cors-origin may call it; any other Origin is 403
    limits       a request's head (request line and headers) is at most 16 KiB in 64 lines and must
                 arrive within --client-timeout seconds in all, as must each write to a slow reader; one
                 client address may hold --max-client-connections connections; past --max-connections
                 in all, new connections are closed unanswered
"""

import hmac
import ipaddress
import os
import threading

from .errors import ShimError

KEY_ENVIRONMENT = "EDGEQWEN_API_KEY"
MAX_HEAD_BYTES = 16 * 1024  # request line + headers: a real client sends well under 2 KiB
MAX_HEAD_LINES = 64
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, X-Api-Key"


def load_api_key(args):
    """The key from --api-key-file, --api-key or $EDGEQWEN_API_KEY (in that order), or None."""
    if args.api_key_file:
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                key = f.read().strip()
        except OSError as e:
            raise ShimError(f"--api-key-file {args.api_key_file}: {e.strerror}") from None
        if not key:
            raise ShimError(f"--api-key-file {args.api_key_file} is empty")
        return key
    key = args.api_key or os.environ.get(KEY_ENVIRONMENT) or None
    if key is not None and len(key) < 8:
        raise ShimError("the API key is shorter than 8 characters; use a long random one "
                        "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key


def is_loopback(host):
    if host == "localhost":
        return True
    try:  # "" (every interface) and names other than localhost are not loopback
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(args, key):
    """Refuse to listen beyond this machine with no key, unless --no-auth; returns warnings to print."""
    if args.cors_origin and "*" in args.cors_origin and key is None:
        raise ShimError("--cors-origin '*' lets any web page call this server: it needs an API key (--api-key-file "
                        f"FILE, --api-key KEY or ${KEY_ENVIRONMENT})")
    if key is not None or is_loopback(args.host):
        return []
    if not args.no_auth:
        raise ShimError(f"--host {args.host} serves anyone who can reach this machine; set a key (--api-key-file FILE, "
                        f"--api-key KEY or ${KEY_ENVIRONMENT}), or pass --no-auth to serve without one")
    return [f"WARNING: --no-auth: anyone who can reach {args.host}:{args.port} can use this model"]


class Guard:
    """The key, the allowed origins and the connection counts for one server."""

    def __init__(self, key, origins, max_connections, max_per_client):
        self.key = key.encode() if key else None
        self.origins = set(origins or ())
        self.max_connections, self.max_per_client = max_connections, max_per_client
        self.open = {}  # client address -> open connections
        self.total = 0
        self.lock = threading.Lock()

    def authorized(self, headers):
        if self.key is None:
            return True
        given = headers.get("X-Api-Key")
        authorization = headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.key)

    def origin_allowed(self, origin):
        return "*" in self.origins or origin in self.origins

    def cors_headers(self, origin):
        """The headers a response to a browser from `origin` carries (none for other callers)."""
        if not origin or not self.origin_allowed(origin):
            return []
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]

    def preflight_headers(self, origin):
        return self.cors_headers(origin) + [("Access-Control-Allow-Methods", CORS_METHODS),
                                            ("Access-Control-Allow-Headers", CORS_HEADERS),
                                            ("Access-Control-Max-Age", "600")]

    def connect(self, address):
        """Count a new connection: 'ok', 'client' (this address holds too many) or 'server' (too many in all)."""
        with self.lock:
            if self.total >= self.max_connections:
                return "server"
            self.total += 1
            self.open[address] = self.open.get(address, 0) + 1
            return "client" if self.max_per_client and self.open[address] > self.max_per_client else "ok"

    def disconnect(self, address):
        with self.lock:
            self.total -= 1
            self.open[address] -= 1
            if not self.open[address]:
                del self.open[address]


class HeadTooLarge(Exception):
    pass


class HeadReader:
    """The connection's input, with the request head limited in bytes and lines (the body is read as is)."""

    def __init__(self, raw):
        self.raw = raw
        self.used = self.lines = 0
        self.limited = True

    def readline(self, size=-1):
        if not self.limited:
            return self.raw.readline(size)
        room = MAX_HEAD_BYTES - self.used + 1
        line = self.raw.readline(room if size < 0 else min(size, room))
        self.used += len(line)
        self.lines += 1
        if self.used > MAX_HEAD_BYTES or self.lines > MAX_HEAD_LINES:
            raise HeadTooLarge()
        return line

    def read(self, size=-1):
        return self.raw.read(size)

    def close(self):
        self.raw.close()
