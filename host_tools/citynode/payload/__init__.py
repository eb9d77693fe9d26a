"""The data on the air and its meaning: channels, the frame codec, uplink messages, decoding, outputs, downlink commands, the generated JavaScript codecs."""
