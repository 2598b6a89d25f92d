"""The pool manager: periodic passes on the IOLoop, one module per loop."""
