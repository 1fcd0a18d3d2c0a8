import sys

from .generators import pulumi_yaml_declarations, readme_table

print({"yaml": pulumi_yaml_declarations, "readme": readme_table}[sys.argv[1]](), end="")
