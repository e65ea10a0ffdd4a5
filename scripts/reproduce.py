"""``python scripts/reproduce.py …`` (or ``accelerate launch`` it) is ``cocktail-reproduce …``: the command lives in
``cocktail/commands/reproduce.py``; this path stays for README's commands and for habit."""

from cocktail.commands.reproduce import main
from cocktail.errors import run_script

if __name__ == "__main__":
    run_script(main)
