from django.db import migrations


def create_embedded_model(apps, schema_editor):
    ModelSpec = apps.get_model("studio", "ModelSpec")
    ModelSpec.objects.get_or_create(
        team=None,
        kind="embedded",
        defaults={"name": "SmolLM2-135M-Instruct (embedded)", "num_layers": 30},
    )


class Migration(migrations.Migration):
    dependencies = [("studio", "0001_initial")]
    operations = [migrations.RunPython(create_embedded_model, migrations.RunPython.noop)]
