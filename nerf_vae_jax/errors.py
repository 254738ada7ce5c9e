"""The project's own errors: bad input whose message names the problem and the fix.

Entry points print these as one line and exit with code 1; every other
exception (a shape bug in JAX code, say) keeps its traceback.
"""


class UserError(Exception):
  """Bad input or state a user can fix; the message says how."""


class ConfigError(UserError, ValueError):
  """A config field with a value the code cannot use."""
