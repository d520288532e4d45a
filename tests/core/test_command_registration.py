"""The parser of `dial eval` reads light modules (tests/services/test_cli_startup.py: no torch at start-up);
what it offers must be what the handlers accept."""


def test_eval_offers_exactly_the_modes_it_has_refiners_for():
    from dial.evaluation.modes import MODES
    from dial.evaluation.refiners import REFINERS

    assert sorted(MODES) == sorted(REFINERS)


def test_the_settings_the_parser_reads_are_the_adapters():
    from dial.adaptation import disca, settings

    assert disca.DiscaSettings is settings.DiscaSettings
    assert disca.VARIANTS is settings.VARIANTS
