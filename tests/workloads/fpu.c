/*
 * FPU/vector state: known values sit in st(0..7), xmm0-15 and (with AVX) the
 * upper halves of ymm0-15, plus a non-default x87 control word and MXCSR.
 * An assembly loop loads them, prints READY itself (so the checkpoint always
 * finds them loaded), then spins: each iteration it saves the state with
 * fxsave/vextractf128 and compares it to a reference taken after loading,
 * counting mismatches, until SIGTERM. C then checks the final state against
 * the values it asked for. Needs no -mavx: the AVX code is only assembled and
 * runs only when the CPU and kernel support AVX.
 */
#include "zdtm.h"
#include <stddef.h>

struct fpu {
	unsigned char cur[512];		/* 0: fxsave each iteration */
	unsigned char ref[512];		/* 512: fxsave after loading */
	unsigned char cur_hi[256];	/* 1024: ymm upper halves each iteration */
	unsigned char ref_hi[256];	/* 1280: ymm upper halves after loading */
	unsigned char xmm_in[256];	/* 1536: values for xmm0-15 */
	unsigned char hi_in[256];	/* 1792: values for ymm0-15 upper halves */
	long double st_in[8];		/* 2048: values for st(0..7) */
	unsigned int mxcsr;		/* 2176 */
	unsigned short fcw;		/* 2180 */
	int avx;			/* 2184 */
	volatile sig_atomic_t *stop;	/* 2192 */
	long iterations;		/* 2200 */
	long mismatches;		/* 2208 */
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct fpu, hi_in) == 1792, "layout");
_Static_assert(offsetof(struct fpu, st_in) == 2048, "layout");
_Static_assert(offsetof(struct fpu, avx) == 2184, "layout");
_Static_assert(offsetof(struct fpu, mismatches) == 2208, "layout");

void fpu_spin(struct fpu *f);

/* CHKQ compares the 8 bytes at offset \a with those at \a + \d (default:
 * the same field of ref); CHKW compares 2 bytes with ref. */
__asm__(
	".macro CHKQ a d=512\n"
	"	mov \\a(%rdi), %rax\n"
	"	cmp (\\a+\\d)(%rdi), %rax\n"
	"	jne 8f\n"
	".endm\n"
	".macro CHKW a\n"
	"	movzwl \\a(%rdi), %eax\n"
	"	cmpw (\\a+512)(%rdi), %ax\n"
	"	jne 8f\n"
	".endm\n"
	".text\n"
	".globl fpu_spin\n"
	".type fpu_spin, @function\n"
	"fpu_spin:\n"
	"	fninit\n"
	"	fldcw 2180(%rdi)\n"
	"	.irp i,7,6,5,4,3,2,1,0\n"
	"	fldt (2048+16*\\i)(%rdi)\n"
	"	.endr\n"
	"	ldmxcsr 2176(%rdi)\n"
	"	cmpl $0, 2184(%rdi)\n"
	"	je 2f\n"
	"	.irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
	"	vmovdqu (1536+16*\\i)(%rdi), %xmm\\i\n"
	"	vinsertf128 $1, (1792+16*\\i)(%rdi), %ymm\\i, %ymm\\i\n"
	"	vextractf128 $1, %ymm\\i, (1280+16*\\i)(%rdi)\n"
	"	.endr\n"
	"	jmp 3f\n"
	"2:\n"
	"	.irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
	"	movdqu (1536+16*\\i)(%rdi), %xmm\\i\n"
	"	.endr\n"
	"3:\n"
	"	fxsave64 512(%rdi)\n"
	/* write(1, "READY\n", 6): syscall touches only rax, rcx, r11 */
	"	mov %rdi, %r8\n"
	"	mov $1, %eax\n"
	"	mov $1, %edi\n"
	"	lea fpu_ready_msg(%rip), %rsi\n"
	"	mov $6, %edx\n"
	"	syscall\n"
	"	mov %r8, %rdi\n"
	"1:\n"
	"	fxsave64 0(%rdi)\n"
	"	cmpl $0, 2184(%rdi)\n"
	"	je 4f\n"
	"	.irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
	"	vextractf128 $1, %ymm\\i, (1024+16*\\i)(%rdi)\n"
	"	.endr\n"
	"	.irp q,0,8,16,24,32,40,48,56,64,72,80,88,96,104,112,120,128,136,144,152,160,168,176,184,192,200,208,216,224,232,240,248\n"
	"	CHKQ 1024+\\q, 256\n"
	"	.endr\n"
	"4:\n"
	"	movl 0(%rdi), %eax\n"	/* FCW, FSW */
	"	cmpl 512(%rdi), %eax\n"
	"	jne 8f\n"
	"	movzbl 4(%rdi), %eax\n"	/* abridged FTW */
	"	cmpb 516(%rdi), %al\n"
	"	jne 8f\n"
	"	movl 24(%rdi), %eax\n"	/* MXCSR */
	"	cmpl 536(%rdi), %eax\n"
	"	jne 8f\n"
	"	.irp i,0,1,2,3,4,5,6,7\n"
	"	CHKQ 32+16*\\i\n"
	"	CHKW 40+16*\\i\n"
	"	.endr\n"
	"	.irp q,0,8,16,24,32,40,48,56,64,72,80,88,96,104,112,120,128,136,144,152,160,168,176,184,192,200,208,216,224,232,240,248\n"
	"	CHKQ 160+\\q\n"
	"	.endr\n"
	"	jmp 9f\n"
	"8:\n"
	"	incq 2208(%rdi)\n"
	"9:\n"
	"	incq 2200(%rdi)\n"
	"	mov 2192(%rdi), %rax\n"
	"	cmpl $0, (%rax)\n"
	"	je 1b\n"
	"	ret\n"
	".size fpu_spin, .-fpu_spin\n"
	".section .rodata\n"
	"fpu_ready_msg: .ascii \"READY\\n\"\n"
	".text\n");

static struct fpu f;

int main(void)
{
	int i;

	zdtm_init();
	f.avx = __builtin_cpu_supports("avx");
	for (i = 0; i < 256; i++) {
		f.xmm_in[i] = (unsigned char)(i * 7 + 1);
		f.hi_in[i] = (unsigned char)(i * 13 + 5);
	}
	for (i = 0; i < 8; i++)
		f.st_in[i] = (i + 1) / 3.0L + i * 1000.0L;
	f.fcw = 0x0f7f;		/* round toward zero, all exceptions masked */
	f.mxcsr = 0x7f80;	/* round toward zero, all exceptions masked */
	f.stop = &zdtm_stop;

	fpu_spin(&f);

	if (f.mismatches)
		zdtm_fail("register state changed in %ld of %ld iterations", f.mismatches, f.iterations);
	if (*(unsigned short *)f.cur != f.fcw)
		zdtm_fail("x87 control word %#x, expected %#x", *(unsigned short *)f.cur, f.fcw);
	if (*(unsigned int *)(f.cur + 24) != f.mxcsr)
		zdtm_fail("MXCSR %#x, expected %#x", *(unsigned int *)(f.cur + 24), f.mxcsr);
	for (i = 0; i < 8; i++)
		if (memcmp(f.cur + 32 + 16 * i, &f.st_in[i], 10))
			zdtm_fail("st(%d) lost its value", i);
	for (i = 0; i < 16; i++)
		if (memcmp(f.cur + 160 + 16 * i, f.xmm_in + 16 * i, 16))
			zdtm_fail("xmm%d lost its value", i);
	for (i = 0; f.avx && i < 16; i++)
		if (memcmp(f.cur_hi + 16 * i, f.hi_in + 16 * i, 16))
			zdtm_fail("ymm%d upper half lost its value", i);
	zdtm_pass();
}
