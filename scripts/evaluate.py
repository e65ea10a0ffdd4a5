"""``python scripts/evaluate.py …`` (or ``accelerate launch`` it) is ``cocktail-evaluate …``: the command lives in
``cocktail/commands/evaluate.py``; this path stays for README's commands and for habit."""

from cocktail.commands.evaluate import main
from cocktail.errors import run_script

if __name__ == "__main__":
    run_script(main)
