build-exp/fs/keys.o: fs/keys.c fs/keys.h fs/iverr.h fs/bytes.h
fs/keys.h:
fs/iverr.h:
fs/bytes.h:
