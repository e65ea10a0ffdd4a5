"""``python scripts/train_source.py …`` (or ``accelerate launch`` it) is ``cocktail-train-source …``: the
command lives in ``cocktail/commands/train_source.py``; this path stays for README's commands and for habit."""

from cocktail.commands.train_source import main
from cocktail.errors import run_script

if __name__ == "__main__":
    run_script(main)
