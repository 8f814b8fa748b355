"""``python -m posthog_otel``: the ``posthog-otel`` command."""

from .cli import main

raise SystemExit(main())
