"""Small real applications that tests/test_frameworks.py serves from subprocesses."""
