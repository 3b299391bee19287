//! The context switch between a worker thread and a task: x86_64 (System V ABI) only.
//!
//! A suspended context is one stack pointer. [`switch`] pushes the callee-saved registers
//! (rbp, rbx, r12 to r15) and the callee-saved control state (MXCSR and the x87 control word)
//! on the current stack, stores the stack pointer through `save`, loads the other stack
//! pointer, pops the same from it and returns there. Everything else the ABI lets a call
//! clobber, so the compiler has already saved what it needs before calling [`switch`].
//!
//! Why not a crate: `corosensei` puts a stack where we choose, but keeps the saved stack
//! pointer inside its `Coroutine` value on the node-local heap; a task that migrates needs
//! its whole saved context in its descriptor in the shared region, at the same address on
//! every node. The saved context here is exactly that word.
//!
//! A new task's stack is prepared by [`prepare`] so that the first switch to it "returns"
//! into a trampoline that calls `entry(arg)` on a 16-byte aligned stack; `entry` never
//! returns (it switches away for the last time).
//!
//! Audit notes: the frame [`switch`] builds is 64 bytes (8 for the control words, six
//! registers, the return address). A stack switched to is 16-byte aligned minus 8 at the
//! `ret` of [`prepare`]'s frame, so the trampoline's `call` enters `entry` with the ABI's
//! alignment (rsp + 8 a multiple of 16). The direction flag is clear at every call
//! boundary by the ABI, so it needs no saving. Unwinding never crosses a switch: the task's
//! entry catches every panic on the task's own stack.

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "memlink-dsm tasks switch contexts with x86_64 assembly; other targets are not supported"
);

core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl memlink_dsm_task_switch",
    ".type memlink_dsm_task_switch,@function",
    "memlink_dsm_task_switch:",
    // rdi: *mut usize, where the current stack pointer goes; rsi: the stack pointer to load.
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "stmxcsr [rsp]",
    "fnstcw [rsp + 4]",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "ldmxcsr [rsp]",
    "fldcw [rsp + 4]",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size memlink_dsm_task_switch, . - memlink_dsm_task_switch",
    "",
    ".p2align 4",
    ".globl memlink_dsm_task_trampoline",
    ".type memlink_dsm_task_trampoline,@function",
    "memlink_dsm_task_trampoline:",
    // The first switch to a new task returns here with r12 = entry, r13 = its argument.
    "mov rdi, r13",
    "call r12",
    "ud2",
    ".size memlink_dsm_task_trampoline, . - memlink_dsm_task_trampoline",
);

unsafe extern "C" {
    fn memlink_dsm_task_switch(save: *mut usize, load: usize);
    fn memlink_dsm_task_trampoline();
}

/// The bytes [`prepare`] uses at the top of a new stack.
pub const INITIAL_FRAME: usize = 64;

/// MXCSR at process start: all exceptions masked, round to nearest.
const MXCSR_DEFAULT: u32 = 0x1f80;
/// The x87 control word at process start: all exceptions masked, double extended precision.
const FPCW_DEFAULT: u32 = 0x037f;

/// Prepare a new context on the stack whose highest address is `top`: the first
/// [`switch`] to the returned stack pointer calls `entry(arg)` there.
///
/// # Safety
/// `top - INITIAL_FRAME .. top` must be writable memory that nothing else uses, and the
/// stack below it must be large enough for everything `entry` runs. `entry` must never
/// return.
pub unsafe fn prepare(top: usize, entry: unsafe extern "C" fn(usize) -> !, arg: usize) -> usize {
    let top = top & !15;
    let sp = top - INITIAL_FRAME;
    let words = [
        (MXCSR_DEFAULT as usize) | ((FPCW_DEFAULT as usize) << 32), // control words
        0,                                                          // r15
        0,                                                          // r14
        arg,                                                        // r13
        entry as usize,                                             // r12
        0,                                                          // rbx
        0,                                                          // rbp
        memlink_dsm_task_trampoline as *const () as usize,          // return address
    ];
    for (i, w) in words.iter().enumerate() {
        // SAFETY: the caller gives us `top - INITIAL_FRAME .. top`; `sp + 8 * i` for i < 8
        // lies inside it and is 8-byte aligned (top is 16-byte aligned).
        unsafe { ((sp + 8 * i) as *mut usize).write(*w) };
    }
    sp
}

/// Save the current context's stack pointer in `*save` and resume the context whose stack
/// pointer is `load`; returns when some context switches back to the one saved.
///
/// # Safety
/// `save` must be valid for a write; `load` must be a stack pointer made by [`prepare`] or
/// saved by a `switch` and not resumed since, whose stack is still mapped; whatever runs
/// there must eventually switch back to `*save` (or never need this context again).
pub unsafe fn switch(save: *mut usize, load: usize) {
    // SAFETY: the function follows the C ABI for its two arguments and preserves every
    // callee-saved register and control word; the caller guarantees `save` and `load`.
    unsafe { memlink_dsm_task_switch(save, load) }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PingPong {
        main_sp: usize,
        task_sp: usize,
        log: Vec<u32>,
    }

    unsafe extern "C" fn body(arg: usize) -> ! {
        let pp = arg as *mut PingPong;
        for i in 0..3u32 {
            // A float in a callee-saved position across the switch.
            let x = f64::from(i) * 1.5;
            // SAFETY: `pp` outlives the task (the test holds it until the task's last
            // switch); only one context runs at a time.
            unsafe {
                (*pp).log.push(i);
                switch(&raw mut (*pp).task_sp, (*pp).main_sp);
            }
            assert_eq!(x, f64::from(i) * 1.5);
        }
        // SAFETY: as above; the main context never resumes this one again.
        unsafe {
            (*pp).log.push(99);
            switch(&raw mut (*pp).task_sp, (*pp).main_sp);
        }
        unreachable!("the finished task was resumed");
    }

    #[test]
    fn switches_back_and_forth_keeping_registers() {
        let mut stack = vec![0u8; 64 * 1024];
        let top = stack.as_mut_ptr() as usize + stack.len();
        let mut pp = Box::new(PingPong {
            main_sp: 0,
            task_sp: 0,
            log: Vec::new(),
        });
        let arg = &raw mut *pp as usize;
        // SAFETY: the stack is ours and outlives the task; body never returns.
        pp.task_sp = unsafe { prepare(top, body, arg) };
        let kept = 7.25f64;
        for _ in 0..4 {
            let p = &raw mut *pp;
            // SAFETY: task_sp was made by prepare or saved by the task's last switch.
            unsafe { switch(&raw mut (*p).main_sp, (*p).task_sp) };
            assert_eq!(kept, 7.25);
        }
        assert_eq!(pp.log, vec![0, 1, 2, 99]);
        drop(stack);
    }
}
