"""The order domain: the Order, its codecs, the rules and decisions per record. Pure: no Kafka client, no I/O, no flags."""
