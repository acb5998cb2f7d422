"""Exception types whose messages are meant to be shown to users as they are."""


class TorchSRError(Exception):
    """Base class: the command-line tools print these without a traceback."""


class CheckpointError(TorchSRError):
    """A weights file is missing, unsafe, or of a layout that cannot be loaded."""


class ConfigError(TorchSRError):
    """A configuration value or key is invalid."""


class DatasetError(TorchSRError):
    """A dataset is missing, incomplete, or holds unreadable files."""
