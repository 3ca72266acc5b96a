from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0006_search_and_queue_counts'),
    ]

    operations = [
        migrations.AddField(
            model_name='sftjob',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, help_text='Last sign of life of its worker, while running.', null=True),
        ),
        migrations.AddField(
            model_name='sftjob',
            name='command',
            field=models.TextField(blank=True, help_text='The command line its worker launched.'),
        ),
    ]
