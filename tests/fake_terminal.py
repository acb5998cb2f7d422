"""A stderr that says it is a terminal, so progress bars draw (they stay silent for pipes and files)."""


class FakeTerminal:
    """Collects what is written; `isatty()` is true and there is no descriptor, so no terminal size."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True
