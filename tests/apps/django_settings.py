"""Django settings for tests/apps/django_app.py: ``LOGGING`` names our handler by class
path (no client, no key: the default client, configured from the environment)."""

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.apps.django_app"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "posthog": {"class": "posthog_otel.logging.PostHogHandler", "level": "INFO"},
    },
    "loggers": {
        "shop": {"handlers": ["posthog"], "level": "INFO", "propagate": False},
    },
}
