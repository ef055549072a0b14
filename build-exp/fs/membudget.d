build-exp/fs/membudget.o: fs/membudget.c fs/membudget.h
fs/membudget.h:
