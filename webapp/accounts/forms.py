from __future__ import annotations

from django import forms

from webapp.accounts.roles import Role
from webapp.limits import NAME_MAX


class TeamForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX, help_text="Shown in the team switcher, e.g. “Alignment lab”.")


class InviteForm(forms.Form):
    role = forms.ChoiceField(
        choices=Role.choices,
        initial=Role.ENGINEER,
        help_text="What they may do; see Roles on this page.",
    )
    note = forms.CharField(max_length=200, required=False, help_text="Who the link is for (only owners see this).")
    days = forms.IntegerField(min_value=1, max_value=365, initial=7, help_text="The link stops working after this many days.")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
