"""jq's implementation; the public faces are ``jq``, ``jq.core`` and ``jq.ptq``."""
