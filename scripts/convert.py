"""``python scripts/convert.py …`` (or ``accelerate launch`` it) is ``cocktail-convert …``: the command lives in
``cocktail/commands/convert.py``; this path stays for README's commands and for habit."""

from cocktail.commands.convert import main
from cocktail.errors import run_script

if __name__ == "__main__":
    run_script(main)
