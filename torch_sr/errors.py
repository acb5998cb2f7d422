"""Exception types whose messages are meant to be shown to users as they are."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if empty), for a one-line error."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


class TorchSRError(Exception):
    """Base class: the command-line tools print these without a traceback."""


class CheckpointError(TorchSRError):
    """A weights file is missing, unsafe, or of a layout that cannot be loaded."""


class ConfigError(TorchSRError):
    """A configuration value or key is invalid."""


class DatasetError(TorchSRError):
    """A dataset is missing, incomplete, or holds unreadable files."""
