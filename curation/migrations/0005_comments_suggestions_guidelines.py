import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0004_chunk_heartbeats'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='dataset',
            name='guidelines',
            field=models.TextField(blank=True, help_text='Markdown for annotators, shown in the workbench (g) on the trajectories this dataset may take; rendered sanitised (no HTML, scripts or javascript: links).'),
        ),
        migrations.CreateModel(
            name='Comment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('body', models.TextField()),
                ('version', models.PositiveIntegerField(help_text="The trajectory's version it was written on.")),
                ('segment_index', models.PositiveIntegerField(blank=True, null=True)),
                ('start', models.PositiveIntegerField(blank=True, null=True)),
                ('end', models.PositiveIntegerField(blank=True, null=True)),
                ('author', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to=settings.AUTH_USER_MODEL)),
                ('trajectory', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='comments', to='curation.trajectory')),
            ],
            options={
                'ordering': ['trajectory_id', 'id'],
            },
        ),
        migrations.CreateModel(
            name='Suggestion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('decision', models.CharField(choices=[('approved', 'Approve'), ('rejected', 'Reject')], max_length=8)),
                ('reason', models.TextField(blank=True)),
                ('source', models.CharField(blank=True, help_text="Who or what judged, e.g. a judge model's name.", max_length=200)),
                ('version', models.PositiveIntegerField(help_text="The trajectory's version it judged.")),
                ('author', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to=settings.AUTH_USER_MODEL)),
                ('trajectory', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='suggestions', to='curation.trajectory')),
            ],
            options={
                'ordering': ['trajectory_id', 'id'],
            },
        ),
    ]
