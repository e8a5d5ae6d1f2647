"""The one error type every bad input in the zoo is reported with.

Catching ``ZooError`` is enough to handle any mistake a user can make through our public API: an unknown part
name, a malformed config, a missing dataset, a tampered weight file. It subclasses ``ValueError`` so callers that
already catch bad values keep working.
"""


class ZooError(ValueError):
    """A bad input to the zoo, with a message that names the problem and, where possible, the fix."""


class UnknownNameError(ZooError, KeyError):
    """A name that is not registered; the message lists the close matches and everything registered."""

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return str(self.args[0]) if self.args else ""


class RecipeMismatch(ZooError):
    """Settings of one method that contradict each other (e.g. normalisation statistics for another number of
    channels than the encoder takes); the command line names the recipe they came from."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
