"""``python scripts/project.py …`` (or ``accelerate launch`` it) is ``cocktail-project …``: the command lives in
``cocktail/commands/project.py``; this path stays for README's commands and for habit."""

from cocktail.commands.project import main
from cocktail.errors import run_script

if __name__ == "__main__":
    run_script(main)
