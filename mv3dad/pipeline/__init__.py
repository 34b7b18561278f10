"""End-to-end jobs that wire the stages together: ``fit``, ``predict`` and ``evaluate``.

data -> encoders (features, cached) -> mapping (fit) -> scoring (pairs, min over sources, background)
-> volume (back-projection, max) -> export / metrics. The CLI parses options into the configs here and calls one
function per command.
"""
