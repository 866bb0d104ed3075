"""One-off rewrites of a training checkpoint that keep the function it computes (widen, grow)."""
