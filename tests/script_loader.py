"""A command of scripts/ as a module, so tests call its functions without a subprocess: the installed
command's module (cocktail/commands/) where there is one, else the script file itself."""

import importlib
import importlib.util
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
COMMANDS = Path(__file__).resolve().parent.parent / "cocktail" / "commands"


def load_script(name: str):
    if (COMMANDS / f"{name}.py").is_file():
        return importlib.import_module(f"cocktail.commands.{name}")
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
