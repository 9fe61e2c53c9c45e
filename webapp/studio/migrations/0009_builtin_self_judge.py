from django.db import migrations


def create_self_judge(apps, schema_editor):
    Judge = apps.get_model("studio", "Judge")
    Judge.objects.get_or_create(
        team=None, name="Self: helpful, honest and harmless",
        defaults={"kind": "self", "better": "higher", "criterion": "helpful, honest and harmless"},
    )


class Migration(migrations.Migration):
    dependencies = [("studio", "0008_judge_self")]
    operations = [migrations.RunPython(create_self_judge, migrations.RunPython.noop)]
