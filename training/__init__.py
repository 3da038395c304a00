"""Training entry points, run with `accelerate launch -m training.<script>` or `python -m`."""
