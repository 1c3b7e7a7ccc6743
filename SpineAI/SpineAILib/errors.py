"""Errors that reach the user as one line.

Every failure a user can cause (bad input, missing model, existing output) is a
SpineAIError whose message is a complete, single-line reason; the CLI prints it
and exits non-zero, the web app and the desktop module show it in their status line.
"""


class SpineAIError(Exception):
    """A user-facing failure; str(error) is a one-line reason."""

    exit_code = 2

    def __str__(self):
        return " ".join(super().__str__().split())


class InputError(SpineAIError):
    """The input cannot be read or is not what the task needs."""


class AmbiguousInputError(InputError):
    """Several candidates (e.g. DICOM series) fit; the user must choose."""

    def __init__(self, message, choices=()):
        super().__init__(message)
        self.choices = list(choices)


class BundleError(SpineAIError):
    """A model bundle is missing, corrupt or does not match its metadata."""


class OutputError(SpineAIError):
    """The output location cannot be written (exists, no permission, ...)."""


def run_reporting_errors(prog, action, debug=False):
    """Run ``action()`` for a command-line program; every failure ends as one line on stderr.

    SpineAIError -> its reason and exit code 2; Ctrl-C -> 130; anything unexpected ->
    one line naming the error (``debug`` or SPINEAI_DEBUG=1 re-raises it for the traceback).
    """
    import os
    import sys
    import warnings

    debug = debug or os.environ.get("SPINEAI_DEBUG") == "1"
    try:
        with warnings.catch_warnings():
            if not debug:  # the libraries' own warnings (pydicom on a damaged value...) would break the one line
                warnings.simplefilter("ignore")
            return action() or 0
    except SpineAIError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        print(f"{prog}: internal error: {type(error).__name__}: {error} (rerun with --debug for details)", file=sys.stderr)
        return 1
