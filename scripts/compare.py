"""``python scripts/compare.py …`` (or ``accelerate launch`` it) is ``cocktail-compare …``: the command lives in
``cocktail/commands/compare.py``; this path stays for README's commands and for habit."""

from cocktail.commands.compare import main
from cocktail.errors import run_script

if __name__ == "__main__":
    run_script(main)
