package main

//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" counter counter.c
