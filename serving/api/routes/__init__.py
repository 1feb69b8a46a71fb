"""One router per resource. Every route documents the two refusals every caller may meet."""

from serving.schemas import ErrorMessage

REFUSALS = {
    401: {"model": ErrorMessage, "description": "Not signed in, or the token expired."},
    403: {"model": ErrorMessage, "description": "Your role may not open this, or the key is outside your scope. "
                                                "An unknown key gets the same answer as another's key."},
    404: {"model": ErrorMessage, "description": "A key your own scope names has no data yet."},
}
