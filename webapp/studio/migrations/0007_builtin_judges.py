from django.db import migrations

BUILTIN = [  # (name, kind, better): judges that need no setup, for every team
    ("Sentiment (VADER)", "lexicon", "higher"),
    ("Length: shorter is better", "length", "lower"),
    ("Length: longer is better", "length", "higher"),
    ("Formality", "formality", "higher"),
]


def create_builtin_judges(apps, schema_editor):
    Judge = apps.get_model("studio", "Judge")
    for name, kind, better in BUILTIN:
        Judge.objects.get_or_create(team=None, name=name, defaults={"kind": kind, "better": better})


class Migration(migrations.Migration):
    dependencies = [("studio", "0006_judges")]
    operations = [migrations.RunPython(create_builtin_judges, migrations.RunPython.noop)]
