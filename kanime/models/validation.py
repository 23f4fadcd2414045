"""Argument checks shared by the model constructors."""

SUPPORTED_RESOLUTIONS = (32, 64, 128, 256)


def check_positive_int(name, value):
    """Returns `value` if it is an int >= 1, else raises a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def check_resolution(resolution):
    """Returns `resolution` if it is one of `SUPPORTED_RESOLUTIONS`."""
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"`resolution` must be one of {SUPPORTED_RESOLUTIONS}. "
            f"Received: resolution={resolution!r}"
        )
    return resolution
