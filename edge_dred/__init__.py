"""edge-dred: neural packet-loss recovery (Deep REDundancy) for live Opus voice.

Data flows one way::

    audio -> features -> (encoder -> payload) -> packets -> receiver
          -> (decoder -> features) -> vocoder -> audio
"""
__version__ = "0.1.0"
