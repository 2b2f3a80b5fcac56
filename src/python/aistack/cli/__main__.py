"""`python -m aistack.cli ...`: the same commands as the ``aistack`` script."""

from aistack.cli import app

if __name__ == "__main__":
    app()
