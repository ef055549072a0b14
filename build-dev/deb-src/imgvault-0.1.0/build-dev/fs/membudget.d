build-dev/fs/membudget.o: fs/membudget.c fs/membudget.h
fs/membudget.h:
