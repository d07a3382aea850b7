"""The core: values and rules of the journey (private; the public face is :mod:`buyerjourney`).

Modules here import only the standard library, attrs, python-statemachine
and :mod:`buyerjourney.errors`; nothing above them (the engine, the bulk
path, adapters, the command line, the testing toolkit). A test enforces it.
"""
