"""The project's own exception types, so callers can tell bad input from bugs."""


class ProjectError(Exception):
    """Base class of every error the project raises on purpose."""


class DataError(ProjectError, ValueError):
    """Input data is unusable: the message names the file, the column and the offending rows."""


class ArtifactError(ProjectError):
    """A model or metrics artifact is missing, unreadable or does not match the manifest."""
