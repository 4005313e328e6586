"""The error classes a user can meet: each says in words what was expected and what to do.

Every one subclasses UserError, so a script prints its message alone (common.cli.run_script);
any other exception is a bug and keeps its traceback. RunStopped is the one way a stage stops
early: run_script turns it into the script's exit status. The built-in base each one had before
(RuntimeError, ValueError) stays, so code that catches those still does.
"""


class UserError(Exception):
    """Bad input, a missing file or a stopped run, described in words for the user."""


class InvalidValueError(UserError, ValueError):
    """A flag or argument value outside what is accepted."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be written, read, or is not what was expected."""


class DeviceError(UserError, RuntimeError):
    """The requested device or precision is not available on this machine."""


class RunExistsError(CheckpointError, FileExistsError):
    """The run folder already holds a run and --resume was not given."""


class OutputExistsError(UserError, FileExistsError):
    """An output file of an earlier call is in the way and --overwrite was not given."""


class RunStopped(UserError):
    """A run stopped before its end (a signal, a collapse check) after logging how to go on;
    `exit_code` is the exit status of the script."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
