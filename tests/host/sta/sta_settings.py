"""Django settings of the test SensorThings server: the HydroServer STA v1.1 app on one SQLite file (env STA_DB)."""
import os
from uuid import UUID

SECRET_KEY = "citynode-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "sta_urls"
# CommonMiddleware sets Content-Length, without which the server closes every connection (no keep-alive).
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
INSTALLED_APPS = [
    "sensorthings.versions.v1_1",
    "sensorthings.versions.v1_1.backends.django",
    "sensorthings.versions.v1_1.extensions.dataarray",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("STA_DB", "sta.sqlite3"),
        "OPTIONS": {},
    }
}
if os.environ.get("STA_SQLITE_TUNED", "1") == "1":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock when a transaction starts, so
    # two concurrent writers queue on the busy timeout instead of one failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE",
                                       "timeout": 30}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Links in responses (Location headers, @iot.selfLink, @iot.nextLink) name this host and port: the server's own, or
# the fault-injecting proxy's when one stands in front of it.
SENSORTHINGS_V1_1_SERVICE_URL = f"http://127.0.0.1:{os.environ.get('STA_PUBLIC_PORT', '8000')}/sensorthings"
SENSORTHINGS_V1_1_BACKEND_ADAPTER = "sensorthings.versions.v1_1.backends.django.adapter.DjangoBackendAdapter"
SENSORTHINGS_V1_1_ID_TYPE = UUID
SENSORTHINGS_V1_1_ID_DELIMITER = "'"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    # One line per 4xx/5xx answer and a traceback per 500; successful requests are not logged.
    "loggers": {"django.server": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
                "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
}
