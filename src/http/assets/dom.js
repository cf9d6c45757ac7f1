/* tallyd dashboard: the few DOM helpers every other script uses (elements, whole numbers
 * written as plain digits grouped by CSS, the highlight of a changed figure). */
(function () {
    'use strict';

    function toInt(v) {
        if (v === null || v === undefined || v === '') return null;
        var n = Number(v);
        return Number.isFinite(n) ? Math.trunc(n) : null;
    }

    function el(tag, cls, text) {
        var e = document.createElement(tag);
        if (cls) e.className = cls;
        if (text !== undefined) e.textContent = text;
        return e;
    }

    function bump(e) {
        e.classList.remove('bump');
        void e.offsetWidth; /* restart the animation */
        e.classList.add('bump');
    }

    /* Writes n into e as plain digits, grouped by threes with CSS spacing only: the text
     * stays "1234567" for copy-paste, screen readers and scripts, and reads as 1 234 567
     * in every language. data-value holds the number. */
    function setNum(e, v) {
        var n = toInt(v);
        if (!e) return;
        if (n === null) {
            e.textContent = '—';
            delete e.dataset.value;
            return;
        }
        var s = String(n);
        if (e.dataset.value === s) return;
        var changed = e.dataset.value !== undefined;
        e.dataset.value = s;
        var neg = s[0] === '-' ? '-' : '';
        var digits = neg ? s.slice(1) : s;
        var head = digits.length % 3 || 3;
        var parts = [neg + digits.slice(0, head)];
        for (var i = head; i < digits.length; i += 3) {
            var g = document.createElement('span');
            g.className = 'g';
            g.textContent = digits.slice(i, i + 3);
            parts.push(g);
        }
        e.replaceChildren.apply(e, parts);
        if (changed) bump(e);
    }

    function numSpan(v, cls) {
        var e = el('span', 'num' + (cls ? ' ' + cls : ''));
        setNum(e, v);
        return e;
    }

    window.Tally = window.Tally || {};
    window.Tally.dom = { toInt: toInt, el: el, bump: bump, setNum: setNum, numSpan: numSpan };
})();
