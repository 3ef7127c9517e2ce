"""Units the settings, the limits and their messages count in."""

MiB = 1024 * 1024
