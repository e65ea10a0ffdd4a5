"""``python scripts/merge.py …`` (or ``accelerate launch`` it) is ``cocktail-merge …``: the command lives in
``cocktail/commands/merge.py``; this path stays for README's commands and for habit."""

from cocktail.commands.merge import main
from cocktail.errors import run_script

if __name__ == "__main__":
    run_script(main)
