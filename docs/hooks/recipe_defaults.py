"""A griffe extension for the API reference: plain defaults for recipe fields.

`kanime.recipe` declares checked dataclass fields as `_field(default, check)` and
sections as `_section(Config)`. Read statically, a signature would show those calls
as the defaults; this extension shows `default` and `Config()` instead.
"""

import ast

import griffe


class RecipeDefaults(griffe.Extension):
    def on_attribute_instance(self, *, node, attr, agent, **kwargs):
        value = getattr(node, "value", None)
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
            return
        if value.func.id == "_field" and value.args:
            attr.value = ast.unparse(value.args[0])
        elif value.func.id == "_section" and value.args:
            attr.value = f"{ast.unparse(value.args[0])}()"
