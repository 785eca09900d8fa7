"""The one exception type of the data layer: bad input, named by file, key or line."""


class DataError(ValueError):
    """A missing, empty or malformed dataset, or a record rejected by a 'fail' policy."""
